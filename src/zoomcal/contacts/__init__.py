"""The contacts service: one directory of people across Zoom, Google, Microsoft and CardDAV.

`identity` normalises addresses, `resolve` decides (purely) which records are one human, `search` answers prefix
queries; the application layer (zoomcal.app.contacts) reads the sources and keeps the result in the store."""
