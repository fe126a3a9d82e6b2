"""Generated from protos/chatbot/v1 by cmd/gen-protos.sh. Do not edit."""
