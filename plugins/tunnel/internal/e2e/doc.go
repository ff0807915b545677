// Package e2e holds the tunnel plugin's end-to-end tests: the real plugin process,
// started the way sitelinkd starts it (go-plugin handshake, user nobody with only its
// declared capabilities), in the connector namespace of a testenv topology whose
// security gateways run the pinned stock wireguard-go configured with wg.
package e2e
