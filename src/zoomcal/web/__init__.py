"""The web door: FastAPI apps that translate HTTP into application operations (webhooks today)."""
