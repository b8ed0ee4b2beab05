from zoomcal.connectors.google.contacts_spec import CONTACTS_SPEC
from zoomcal.connectors.google.spec import SPEC

SPECS = (SPEC, CONTACTS_SPEC)

__all__ = ["SPEC", "SPECS", "CONTACTS_SPEC"]
