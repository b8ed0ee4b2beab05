from zoomcal.connectors.graph.contacts_spec import CONTACTS_SPEC
from zoomcal.connectors.graph.spec import SPEC

SPECS = (SPEC, CONTACTS_SPEC)

__all__ = ["SPEC", "SPECS", "CONTACTS_SPEC"]
