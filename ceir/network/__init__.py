"""The core network's doors: N5g-eir over HTTP/2 (:mod:`.n5g_eir`, NRF registration in
:mod:`.nrf`) and S13 over Diameter (:mod:`.s13`)."""
