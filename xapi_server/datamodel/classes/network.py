"""Classes: network, PIF, PIF_metrics, VIF, VLAN.

Field facts (names, types, qualifiers, defaults) follow xapi's datamodel."""
from .._dsl import (FOLDER_KEYS, RC, RO, RW, cls, device_runtime, field, identity, msg, names,
                    operations, other_config, tags)

_PIF_OP = dict(role='pool-operator')

NETWORK = cls(
    'network', 'A virtual network (a Linux bridge).',
    ctor=True, write_role='pool-operator',
    fields=[
        identity(),
        *names(),
        *operations('network_operations'),
        field('VIFs', 'VIF ref set', RO,
              doc='The VM interfaces on the network.'),
        field('PIFs', 'PIF ref set', RO,
              doc='The host interfaces that connect the network to the outside.'),
        field('MTU', 'int', RW, default=1500, role='vm-admin',
              doc='Largest packet (bytes) the network carries.'),
        other_config(key_roles=FOLDER_KEYS),
        field('bridge', 'string', RC, default="",
              doc='Name of the Linux bridge that carries the network on each host.'),
        field('managed', 'bool', RC, default=True,
              doc='True when the server creates and removes the bridge itself.'),
        field('blobs', '(string -> blob ref) map', RO, default={}),
        tags(),
        field('default_locking_mode', 'enum network_default_locking_mode', RO, default='unlocked', setter='pool-operator',
              doc='The locking mode of VIFs whose own mode is network_default.'),
        field('assigned_ips', '(VIF ref -> string) map', RO, default={}),
        field('purpose', 'enum network_purpose set', RO, default=[],
              doc='Special uses of the network (nbd, insecure_nbd).'),
    ],
    messages=[
        msg('set_default_locking_mode',
            'network ref network, enum network_default_locking_mode value', 'void',
            'Locking mode of the network\'s VIFs whose own mode is network_default.',
            role='pool-operator'),
        msg('add_purpose', 'network ref self, enum network_purpose value', 'void',
            'Give a network a purpose (nbd, insecure_nbd).',
            errors=['NETWORK_INCOMPATIBLE_PURPOSES'], role='pool-admin'),
        msg('remove_purpose', 'network ref self, enum network_purpose value', 'void',
            'Remove a purpose from a network.', role='pool-admin'),
    ],
)

PIF = cls(
    'PIF', 'A physical or VLAN network interface of a host.',
    write_role='pool-operator',
    fields=[
        identity(),
        field('device', 'string', RC,
              doc="The NIC's name on the host (e.g. eth0)."),
        field('network', 'network ref', RC,
              doc='The network the interface connects.'),
        field('host', 'host ref', RC),
        field('MAC', 'string', RC),
        field('MTU', 'int', RC),
        field('VLAN', 'int', RC,
              doc='The 802.1Q tag; -1 for a physical interface.'),
        field('metrics', 'PIF_metrics ref', RO),
        field('physical', 'bool', RO, default=False,
              doc='True for a NIC, false for a VLAN interface.'),
        field('currently_attached', 'bool', RO, default=True,
              doc="True while the interface is part of its network's bridge."),
        field('ip_configuration_mode', 'enum ip_configuration_mode', RO, default='None'),
        field('IP', 'string', RO, default=""),
        field('netmask', 'string', RO, default=""),
        field('gateway', 'string', RO, default=""),
        field('DNS', 'string', RO, default=""),
        field('bond_slave_of', 'Bond ref', RO, default='OpaqueRef:NULL'),
        field('bond_master_of', 'Bond ref set', RO),
        field('VLAN_master_of', 'VLAN ref', RO, default='OpaqueRef:NULL'),
        field('VLAN_slave_of', 'VLAN ref set', RO),
        field('management', 'bool', RO, default=False,
              doc='True for the interface the server is reached through.'),
        other_config(default={}),
        field('disallow_unplug', 'bool', RO, setter='pool-operator', default=False),
        field('tunnel_access_PIF_of', 'tunnel ref set', RO),
        field('tunnel_transport_PIF_of', 'tunnel ref set', RO),
        field('ipv6_configuration_mode', 'enum ipv6_configuration_mode', RO, default='None'),
        field('IPv6', 'string set', RO, default=[]),
        field('ipv6_gateway', 'string', RO, default=""),
        field('primary_address_type', 'enum primary_address_type', RO, default='IPv4', setter='pool-operator'),
        field('managed', 'bool', RC, default=True),
        field('properties', '(string -> string) map', RO, default={},
              key_setter='PIF.set_property'),
        field('capabilities', 'string set', RO, default=[]),
        field('igmp_snooping_status', 'enum pif_igmp_status', RO, default='unknown'),
        field('sriov_physical_PIF_of', 'network_sriov ref set', RO),
        field('sriov_logical_PIF_of', 'network_sriov ref set', RO),
        field('PCI', 'PCI ref', RO, default='OpaqueRef:NULL'),
    ],
    messages=[
        msg('scan', 'host ref host', 'void',
            'Create a PIF for every physical NIC of the host that has none.', **_PIF_OP,
            forward="host"),
        msg('introduce', 'host ref host, string MAC, string device, bool managed=true',
            'PIF ref', 'Create a PIF for one existing NIC.', **_PIF_OP, forward="host"),
        msg('forget', 'PIF ref self', 'void', 'Forget a PIF (the NIC is left alone).',
            errors=['PIF_TUNNEL_STILL_EXISTS', 'CLUSTERING_ENABLED'], **_PIF_OP),
        msg('plug', 'PIF ref self', 'void',
            'Attach the PIF: its NIC comes up as a port of its network\'s bridge, and its '
            'addresses and routes move to the bridge.',
            errors=['TRANSPORT_PIF_NOT_CONFIGURED', 'PIF_UNMANAGED', 'CANNOT_PLUG_BOND_SLAVE',
                    'PIF_CONFIGURATION_ERROR'], **_PIF_OP, forward="self"),
        msg('unplug', 'PIF ref self', 'void',
            'Detach the PIF: its NIC leaves the bridge, taking its addresses and routes '
            'back, and its link goes down.',
            errors=['HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN', 'VIF_IN_USE',
                    'PIF_DOES_NOT_ALLOW_UNPLUG', 'PIF_HAS_FCOE_SR_IN_USE',
                    'PIF_IS_MANAGEMENT_INTERFACE', 'PIF_UNMANAGED'], **_PIF_OP, forward="self"),
        msg('reconfigure_ip', 'PIF ref self, enum ip_configuration_mode mode, string IP, '
            'string netmask, string gateway, string DNS', 'void',
            'Set the IPv4 configuration of a (non-management) PIF, on its bridge when it '
            'is plugged, else on the NIC.',
            errors=['CLUSTERING_ENABLED', 'INVALID_IP_ADDRESS_SPECIFIED',
                    'PIF_IS_MANAGEMENT_INTERFACE', 'PIF_UNMANAGED', 'HA_IS_ENABLED'],
            **_PIF_OP, forward="self"),
        msg('reconfigure_ipv6', 'PIF ref self, enum ipv6_configuration_mode mode, '
            'string IPv6, string gateway, string DNS', 'void',
            'Set the IPv6 configuration (Static: IPv6 as address/prefix; Autoconf: router '
            'adverts; None).',
            errors=['CLUSTERING_ENABLED', 'INVALID_IP_ADDRESS_SPECIFIED',
                    'INVALID_CIDR_ADDRESS_SPECIFIED', 'PIF_IS_MANAGEMENT_INTERFACE',
                    'PIF_UNMANAGED', 'HA_IS_ENABLED'], **_PIF_OP, forward="self"),
        msg('set_property', 'PIF ref self, string name, string value', 'void',
            'Set a property of the NIC and apply it (gro: on or off).',
            errors=['INVALID_VALUE', 'CANNOT_CHANGE_PIF_PROPERTIES'], **_PIF_OP, forward="self"),
        msg('db_introduce', 'string device, network ref network, host ref host, string MAC, '
            'int MTU, int VLAN, bool physical, enum ip_configuration_mode '
            'ip_configuration_mode, string IP, string netmask, string gateway, string DNS, '
            'Bond ref bond_slave_of, VLAN ref VLAN_master_of, bool management, '
            '(string -> string) map other_config, bool disallow_unplug, '
            'enum ipv6_configuration_mode ipv6_configuration_mode, string set IPv6, '
            'string ipv6_gateway, enum primary_address_type primary_address_type, '
            'bool managed, (string -> string) map properties', 'PIF ref',
            'Create a PIF record as given; nothing is done to the host.', **_PIF_OP),
        msg('db_forget', 'PIF ref self', 'void',
            'Delete a PIF record; nothing is done to the host.', **_PIF_OP),
        msg('destroy', 'PIF ref self', 'void', 'Destroy a VLAN PIF (deprecated: VLAN.destroy).',
            errors=['PIF_IS_PHYSICAL'], **_PIF_OP),
        msg('create_VLAN', 'string device, network ref network, host ref host, int VLAN',
            'PIF ref', 'Create a VLAN PIF (deprecated: VLAN.create).',
            errors=['VLAN_TAG_INVALID'], **_PIF_OP),
    ],
)

PIF_METRICS = cls(
    'PIF_metrics', 'Link state of a PIF.',
    write_role='pool-operator',
    fields=[
        identity(),
        field('carrier', 'bool', RO),
        field('vendor_id', 'string', RO),
        field('vendor_name', 'string', RO),
        field('device_id', 'string', RO),
        field('device_name', 'string', RO),
        field('speed', 'int', RO),
        field('duplex', 'bool', RO),
        field('pci_bus_path', 'string', RO),
        field('last_updated', 'datetime', RO),
        other_config(default={}),
    ],
)


VIF = cls(
    'VIF', 'A virtual network interface of a VM.',
    ctor=True, write_role='vm-admin',
    fields=[
        identity(),
        *operations('vif_operations'),
        field('device', 'string', RC,
              doc="The interface's position in the VM (0, 1 ...)."),
        field('network', 'network ref', RC,
              doc='The network the interface is on.'),
        field('VM', 'VM ref', RC,
              doc='The VM the interface belongs to.'),
        field('MAC', 'string', RC,
              doc="The interface's MAC address."),
        field('MTU', 'int', RC,
              doc='Largest packet (bytes) the interface carries.'),
        other_config(),
        *device_runtime('True while the interface is plugged into the running VM.'),
        field('MAC_autogenerated', 'bool', RO, default=False,
              doc='True when the server chose the MAC address.'),
        field('locking_mode', 'enum vif_locking_mode', RC, default='network_default', setter='pool-operator',
              doc='network_default, locked (only the allowed addresses pass), unlocked, or '
                  'disabled (no traffic).'),
        field('ipv4_allowed', 'string set', RC, setter='pool-operator', default=[],
              doc='IPv4 addresses the guest may use when the VIF is locked.'),
        field('ipv6_allowed', 'string set', RC, setter='pool-operator', default=[],
              doc='IPv6 addresses the guest may use when the VIF is locked.'),
        field('ipv4_configuration_mode', 'enum vif_ipv4_configuration_mode', RO, default='None'),
        field('ipv4_addresses', 'string set', RO, default=[]),
        field('ipv4_gateway', 'string', RO, default=""),
        field('ipv6_configuration_mode', 'enum vif_ipv6_configuration_mode', RO, default='None'),
        field('ipv6_addresses', 'string set', RO, default=[]),
        field('ipv6_gateway', 'string', RO, default=""),
        field('trunks', 'int set', RC, setter='vm-admin', default=[]),
    ],
    messages=[
        msg('plug', 'VIF ref self', 'void', 'Hot-plug the VIF into its running VM.',
            role='vm-admin', forward="self"),
        msg('unplug', 'VIF ref self', 'void', 'Hot-unplug the VIF from its running VM.',
            role='vm-admin', forward="self"),
        msg('unplug_force', 'VIF ref self', 'void',
            'Hot-unplug the VIF without waiting for the guest.', role='vm-admin', forward="self"),
        msg('move', 'VIF ref self, network ref network', 'void',
            'Move the VIF to another network (live when attached).', role='vm-admin'),
        msg('set_locking_mode', 'VIF ref self, enum vif_locking_mode value', 'void',
            'Set the locking mode (disabled: the link is down).', role='pool-operator'),
        msg('configure_ipv4', 'VIF ref self, enum vif_ipv4_configuration_mode mode, '
            "string address='', string gateway=''", 'void',
            "The guest's IPv4 address on this interface (Static: address/prefix). On the "
            "host-internal NAT network the host's DHCP server hands it out; elsewhere it "
            "needs a guest agent (VM_LACKS_FEATURE, as xapi without one).",
            errors=['INVALID_CIDR_ADDRESS_SPECIFIED', 'INVALID_IP_ADDRESS_SPECIFIED',
                    'VM_LACKS_FEATURE'], role='vm-operator'),
        msg('configure_ipv6', 'VIF ref self, enum vif_ipv6_configuration_mode mode, '
            "string address='', string gateway=''", 'void',
            "The guest's IPv6 address on this interface; needs a guest agent "
            "(VM_LACKS_FEATURE without one, as xapi).",
            errors=['INVALID_CIDR_ADDRESS_SPECIFIED', 'INVALID_IP_ADDRESS_SPECIFIED',
                    'VM_LACKS_FEATURE'], role='vm-operator'),
    ],
)

VLAN = cls(
    'VLAN', 'An 802.1Q VLAN on a PIF.',
    write_role='pool-operator',
    fields=[
        identity(),
        field('tagged_PIF', 'PIF ref', RC, default='OpaqueRef:NULL'),
        field('untagged_PIF', 'PIF ref', RO, default='OpaqueRef:NULL'),
        field('tag', 'int', RC, default=-1),
        other_config(default={}),
    ],
    messages=[
        msg('create', 'PIF ref tagged_PIF, int tag, network ref network', 'VLAN ref',
            'Create a VLAN mux/demuxer: an 802.1Q device on the tagged PIF, bridged '
            'into the network.', errors=['VLAN_TAG_INVALID', 'PIF_VLAN_EXISTS',
                                         'PIF_IS_VLAN', 'NETWORK_ALREADY_CONNECTED'],
            role='pool-operator'),
        msg('destroy', 'VLAN ref self', 'void', 'Destroy a VLAN mux/demuxer.',
            role='pool-operator'),
    ],
)
