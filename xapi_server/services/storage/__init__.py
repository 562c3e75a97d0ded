"""Storage as XenAPI sees it: SR and VDI records kept true to the drivers in
backends/storage (which know nothing of records)."""
