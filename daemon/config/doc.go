// Package config owns sitelinkd's configuration: the main file
// (/etc/sitelink/sitelink.yaml) and the vendor plugin manifests
// (/etc/sitelink/plugins.d/*.yaml).
//
// Both are read strictly through go.yaml.in/yaml/v3's node API, so every problem is
// reported as FILE:LINE:COL: reason. Parse and LoadManifests return all problems they
// find at once, as an *Errors. Unknown keys, duplicate keys, wrong types, bad enum
// values, bad plugin names, dangling or cyclic `after` references are all errors; an
// empty file is a valid all-defaults configuration.
//
// Each plugin's own section (`config:`) is kept as JSON for the plugin. Errors a plugin
// reports about its section (a path such as "gateways[1].endpoint" or a JSON pointer)
// are mapped back to the file with (*Config).ErrorAt; ValidateSchema and SchemaCache
// check a section against the plugin's JSON Schema the same way.
//
// Diff compares two configurations for a reload, and (*Config).Marshal renders the
// effective configuration (defaults filled in) as YAML.
package config
