"""The core network's doors: N5g-eir over HTTP/2, S13 over Diameter."""
