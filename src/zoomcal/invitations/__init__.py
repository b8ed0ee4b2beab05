"""E-mail invitations (iTIP over SMTP): what to send is decided in the store's transactions and kept in an outbox;
a sender delivers the outbox. See outbox.py, compose.py and smtp.py."""
