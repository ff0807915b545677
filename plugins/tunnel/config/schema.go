package config

// Schema is the JSON Schema of the tunnel config section. The daemon checks the
// operator's YAML against it before Configure; Parse repeats every check with paths.
const Schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "tunnel",
  "description": "Encrypted WireGuard tunnel to the platform's security gateways, with failover and routes that follow it",
  "type": "object",
  "additionalProperties": false,
  "required": ["gateways"],
  "$defs": {
    "duration": {"type": "string", "pattern": "^(0|([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"}
  },
  "properties": {
    "interface": {
      "description": "Name of the WireGuard interface (default sitelink-wg)",
      "type": "string", "minLength": 1, "maxLength": 15
    },
    "backend": {
      "description": "WireGuard implementation: auto (kernel when the module exists, else userspace), userspace or kernel (default auto)",
      "enum": ["auto", "userspace", "kernel"]
    },
    "addresses": {
      "description": "The connector's addresses inside the tunnel, with prefix length (e.g. 100.64.0.2/32); needed for probes",
      "type": "array", "maxItems": 8, "items": {"type": "string"}
    },
    "mtu": {"description": "MTU of the interface (default 1420)", "type": "integer", "minimum": 576, "maximum": 9000},
    "listen_port": {"description": "Local UDP port (default 0: any)", "type": "integer", "minimum": 0, "maximum": 65535},
    "persistent_keepalive": {"description": "Keepalive sent to every gateway, 0 for none (default 25s)", "$ref": "#/$defs/duration"},
    "on_down": {
      "description": "Routes while no gateway is alive: withdraw (remove them) or blackhole (drop the traffic, fail closed; default)",
      "enum": ["withdraw", "blackhole"]
    },
    "route_table": {"description": "Routing table of the routes (default 254, main)", "type": "integer", "minimum": 1, "maximum": 4294967295},
    "route_metric": {"description": "Metric of the routes; blackhole routes use one more (default 50)", "type": "integer", "minimum": 0, "maximum": 4294967294},
    "mss_clamp": {"description": "Clamp the MSS of TCP SYNs through the tunnel to fit its MTU (default true)", "type": "boolean"},
    "health": {
      "description": "Liveness of the gateways and failover",
      "type": "object", "additionalProperties": false,
      "properties": {
        "window": {"description": "A gateway with no handshake and no data received within this window is dead (default 8s)", "$ref": "#/$defs/duration"},
        "probe_interval": {"description": "A gateway silent this long is probed (default 2s)", "$ref": "#/$defs/duration"},
        "hold": {"description": "A more preferred gateway is taken back after it has been alive this long (default 60s)", "$ref": "#/$defs/duration"}
      }
    },
    "gateways": {
      "description": "Security gateways in order of preference",
      "type": "array", "minItems": 1, "maxItems": 16,
      "items": {
        "type": "object", "additionalProperties": false,
        "required": ["name", "endpoint", "public_key", "allowed_prefixes"],
        "properties": {
          "name": {"description": "Name of the gateway, shown in status and events", "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"},
          "endpoint": {"description": "host:port of the gateway's WireGuard endpoint", "type": "string", "minLength": 3},
          "public_key": {"description": "The gateway's WireGuard public key (base64)", "type": "string", "minLength": 44, "maxLength": 44},
          "allowed_prefixes": {
            "description": "Prefixes reached through this gateway: routed into the tunnel while it is active",
            "type": "array", "minItems": 1, "maxItems": 256, "items": {"type": "string"}
          },
          "probe": {"description": "An address of the gateway inside the tunnel that answers ping, for fast dead-gateway detection", "type": "string"}
        }
      }
    }
  }
}`
