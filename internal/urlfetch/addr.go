package urlfetch

import (
	"fmt"
	"net/netip"
)

// rule is a refused range and what to call its addresses in messages.
type rule struct {
	p    netip.Prefix
	what string
}

func rules(pairs ...string) []rule {
	out := make([]rule, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, rule{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// refused4 are the IPv4 ranges refused by default; the first match names the address, so a narrower range
// comes before the range that holds it. Every other IPv4 address is allowed.
var refused4 = rules(
	"0.0.0.0/32", "the unspecified address",
	"0.0.0.0/8", `a "this network" address`,
	"10.0.0.0/8", "a private address",
	"100.64.0.0/10", "a carrier-grade NAT address",
	"127.0.0.0/8", "a loopback address",
	"169.254.169.254/32", "the link-local cloud metadata address",
	"169.254.0.0/16", "a link-local address",
	"172.16.0.0/12", "a private address",
	"192.0.0.0/24", "an IETF protocol assignment address",
	"192.0.2.0/24", "a documentation address",
	"192.88.99.0/24", "a 6to4 relay anycast address",
	"192.168.0.0/16", "a private address",
	"198.18.0.0/15", "a benchmarking address",
	"198.51.100.0/24", "a documentation address",
	"203.0.113.0/24", "a documentation address",
	"224.0.0.0/4", "a multicast address",
	"255.255.255.255/32", "the broadcast address",
	"240.0.0.0/4", "a reserved address",
)

// refused6 are the IPv6 ranges refused by default with a name of their own. After them, 6to4 and NAT64
// addresses are judged by the IPv4 address they embed, and every address outside global6 is refused.
// IPv4-mapped addresses never get here: they are judged as IPv4.
var refused6 = rules(
	"::/128", "the unspecified address",
	"::1/128", "a loopback address",
	"::/96", "an IPv4-compatible address (deprecated)",
	"64:ff9b:1::/48", "a local-use NAT64 address",
	"100::/64", "a discard-only address",
	"2001::/32", "a Teredo address",
	"2001:2::/48", "a benchmarking address",
	"2001:db8::/32", "a documentation address",
	"3fff::/20", "a documentation address",
	"fc00::/7", "a private (unique local) address",
	"fe80::/10", "a link-local address",
	"fec0::/10", "a site-local address (deprecated)",
	"ff00::/8", "a multicast address",
)

var (
	global6 = netip.MustParsePrefix("2000::/3")
	sixTo4  = netip.MustParsePrefix("2002::/16")
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
)

// Classify returns why a is refused by default, as a phrase for messages ("a loopback address
// (127.0.0.0/8)"), or "" when a is allowed by default. It ignores a's zone and judges an IPv4-mapped IPv6
// address as the IPv4 address, and a 6to4 (2002::/16) or NAT64 (64:ff9b::/96) address by the IPv4
// address it embeds. Config.AllowCIDRs and AllowHosts are not consulted.
func Classify(a netip.Addr) string {
	if !a.IsValid() {
		return "not a valid address"
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return match(refused4, a)
	}
	if why := match(refused6, a); why != "" {
		return why
	}
	b := a.As16()
	var kind string
	var v4 netip.Addr
	switch {
	case sixTo4.Contains(a):
		kind, v4 = "a 6to4 address", netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	case nat64.Contains(a):
		kind, v4 = "a NAT64 address", netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if kind != "" {
		if why := match(refused4, v4); why != "" {
			return fmt.Sprintf("%s embedding %s, %s", kind, v4, why)
		}
		return ""
	}
	if !global6.Contains(a) {
		return "not a global unicast address (outside 2000::/3)"
	}
	return ""
}

func match(rs []rule, a netip.Addr) string {
	for _, r := range rs {
		if r.p.Contains(a) {
			return r.what + " (" + r.p.String() + ")"
		}
	}
	return ""
}
