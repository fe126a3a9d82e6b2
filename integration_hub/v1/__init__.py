"""Generated from protos/integration_hub/v1 by cmd/gen-protos.sh. Do not edit."""
