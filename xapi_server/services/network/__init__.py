"""Host networking as XenAPI sees it: network, PIF and VIF records kept true to the
kernel through the driver in backends/network."""
