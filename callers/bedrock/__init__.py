"""Amazon Bedrock, with IAM access keys. Pure data: importing this must not import botocore.

Chat goes through the Converse / ConverseStream API (one wire format for every model
family on Bedrock), embeddings through InvokeModel with the model family's own body,
and verification through the control plane's ListFoundationModels.
"""

from callers.base import Capability
from callers.spec import CredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="bedrock",
    display_name="Amazon Bedrock",
    secret_fields=(
        CredentialField("access_key_id", required=True, description="AWS access key ID (AKIA... or ASIA...)"),
        CredentialField("secret_access_key", required=True, description="AWS secret access key"),
        CredentialField("session_token", description="Session token, for temporary (STS) credentials"),
    ),
    # The access key ID identifies the key pair without being the secret part.
    hint_field="access_key_id",
    option_fields=(
        CredentialField("region", required=True, description="AWS region, e.g. us-east-1"),
        CredentialField(
            "endpoint_url", kind="url", description="bedrock-runtime endpoint override (VPC endpoint)"
        ),
        CredentialField(
            "control_endpoint_url",
            kind="url",
            description=(
                "bedrock (control plane) endpoint override, used to verify the key; "
                "default https://bedrock.<region>.amazonaws.com"
            ),
        ),
    ),
    capabilities=frozenset({Capability.VERIFY, Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED}),
    # Only botocore is imported: boto3's client() is a thin layer over a botocore
    # session, and building the session ourselves is how every lookup is turned off.
    sdk_modules=("botocore",),
)
