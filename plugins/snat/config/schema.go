package config

// Schema is the JSON Schema of the snat config section. The daemon checks the
// operator's YAML against it before Configure; Parse repeats every check with paths.
const Schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "snat",
  "description": "Source NAT and access control for the clients' virtual IP ranges",
  "type": "object",
  "additionalProperties": false,
  "required": ["client_ranges", "applications"],
  "properties": {
    "client_ranges": {
      "description": "The clients' virtual IP ranges (IPv4 and IPv6 prefixes)",
      "type": "array", "minItems": 1, "maxItems": 64,
      "items": {"type": "string"}
    },
    "client_interfaces": {
      "description": "Interfaces client traffic arrives on (e.g. wg0); forwarding is enabled on them",
      "type": "array", "maxItems": 64,
      "items": {"type": "string", "minLength": 1, "maxLength": 15}
    },
    "manage_forwarding": {
      "description": "Enable IPv4/IPv6 forwarding on the client and application interfaces (default true)",
      "type": "boolean"
    },
    "recheck_interval": {
      "description": "How often the kernel rules are compared with the config without an event (default 30s)",
      "type": "string"
    },
    "applications": {
      "type": "array", "minItems": 1, "maxItems": 256,
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "networks", "interface", "snat"],
        "properties": {
          "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
          "networks": {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string"}},
          "interface": {"type": "string", "minLength": 1, "maxLength": 15},
          "snat": {
            "description": "masquerade, \"to ADDRESS\" (\"to A, B\" for one IPv4 and one IPv6 address) or off",
            "type": "string",
            "pattern": "^(masquerade|off|to .+)$"
          },
          "access": {
            "type": "array", "maxItems": 4096,
            "items": {
              "type": "object",
              "additionalProperties": false,
              "properties": {
                "from": {"type": "array", "maxItems": 64, "items": {"type": "string"}},
                "to": {"type": "array", "maxItems": 64, "items": {"type": "string"}},
                "protocol": {"enum": ["tcp", "udp", "icmp", "any"]},
                "ports": {
                  "type": "array", "maxItems": 64,
                  "items": {
                    "oneOf": [
                      {"type": "integer", "minimum": 1, "maximum": 65535},
                      {"type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$"}
                    ]
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}`
