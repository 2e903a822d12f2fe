/**
 * Source ports an echo server must never answer.
 *
 * A datagram "from" one of these ports is either a reply from a service that answers anything
 * (echo, chargen, DNS, NTP...) or a forged request made to look like one. Echoing it starts a
 * loop between two services that never ends (the echo/chargen loop of CERT Advisory
 * CA-1996-01) or makes sockit a reflector in an amplification attack (US-CERT TA14-017A lists
 * most of these). Port 0 is not a valid source port at all.
 *
 * @module
 */

/**
 * Well-known UDP ports of services that answer unsolicited datagrams, with their names. An
 * echo server drops every datagram whose source port is in this table.
 */
export const REFLECTOR_PORTS: ReadonlyMap<number, string> = new Map([
  [0, "invalid port 0"],
  [7, "echo"],
  [9, "discard"],
  [11, "systat"],
  [13, "daytime"],
  [17, "qotd"],
  [19, "chargen"],
  [37, "time"],
  [53, "dns"],
  [67, "dhcp server"],
  [68, "dhcp client"],
  [69, "tftp"],
  [111, "portmap"],
  [123, "ntp"],
  [137, "netbios-ns"],
  [138, "netbios-dgm"],
  [161, "snmp"],
  [162, "snmp-trap"],
  [177, "xdmcp"],
  [389, "cldap"],
  [427, "slp"],
  [500, "isakmp"],
  [520, "rip"],
  [623, "ipmi"],
  [1434, "ms-sql-monitor"],
  [1900, "ssdp"],
  [3283, "apple-remote-desktop"],
  [3478, "stun"],
  [3702, "ws-discovery"],
  [5060, "sip"],
  [5351, "nat-pmp"],
  [5353, "mdns"],
  [5683, "coap"],
  [10001, "ubiquiti-discovery"],
  [11211, "memcached"],
  [27015, "steam"],
  [27960, "quake"],
  [33848, "jenkins-discovery"],
  [37810, "dvr-discovery"],
]);
