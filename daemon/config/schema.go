package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// schemaURL is the location plugin schemas are compiled under (nothing is fetched).
const schemaURL = "urn:sitelink:plugin-config-schema"

// maxCachedSchemas bounds a SchemaCache; the oldest entry goes first.
const maxCachedSchemas = 64

// SchemaCache compiles plugin JSON Schemas once, keyed by their content. It is safe for
// concurrent use; the zero value is ready.
type SchemaCache struct {
	mu      sync.Mutex
	schemas map[[32]byte]*jsonschema.Schema
	order   [][32]byte
}

// NewSchemaCache returns an empty cache.
func NewSchemaCache() *SchemaCache {
	return &SchemaCache{}
}

// ValidateSchema checks a plugin's config section against its JSON Schema (draft
// 2020-12 unless the schema's $schema names another draft, e.g. draft-07). Violations
// are an *Errors positioned with ErrorAt; a schema that does not compile is a plain
// error. Use a SchemaCache to compile each schema only once.
func ValidateSchema(c *Config, plugin string, schemaJSON []byte) error {
	return NewSchemaCache().Validate(c, plugin, schemaJSON)
}

// Validate is ValidateSchema with the compiled schema cached.
func (s *SchemaCache) Validate(c *Config, plugin string, schemaJSON []byte) error {
	p, ok := c.Plugin(plugin)
	if !ok {
		return fmt.Errorf("validate config schema: plugin %q is not configured", plugin)
	}
	sch, err := s.compile(schemaJSON)
	if err != nil {
		return fmt.Errorf("plugin %s: its config schema does not compile: %w", plugin, err)
	}
	cfg := p.Config
	if len(bytes.TrimSpace(cfg)) == 0 {
		cfg = []byte("{}")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(cfg))
	if err != nil {
		return fmt.Errorf("plugin %s: read its config as JSON: %w", plugin, err)
	}
	err = sch.Validate(inst)
	var ve *jsonschema.ValidationError
	if err == nil {
		return nil
	}
	if !errors.As(err, &ve) {
		return fmt.Errorf("plugin %s: validate config: %w", plugin, err)
	}
	printer := message.NewPrinter(language.English)
	var errs Errors
	seen := map[string]bool{}
	for _, leaf := range leaves(ve) {
		loc := leaf.InstanceLocation
		msg := leaf.ErrorKind.LocalizedString(printer)
		atKey := false
		var extra []string
		switch k := leaf.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			// One error per unknown property, at its key.
			extra, atKey = k.Properties, true
		}
		if len(extra) == 0 {
			extra = []string{""}
		}
		for _, prop := range extra {
			tokens, m := loc, msg
			if prop != "" {
				tokens = append(append([]string(nil), loc...), prop)
				m = fmt.Sprintf("unknown property %q (not allowed by the plugin's schema)", prop)
			}
			e := c.errorAt(plugin, tokens, m, atKey)
			if key := e.Error(); !seen[key] {
				seen[key] = true
				errs = append(errs, e)
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, c.errorAt(plugin, nil, ve.Error(), false))
	}
	return finish(errs, 0)
}

// leaves returns the most specific errors of a validation error tree.
func leaves(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return []*jsonschema.ValidationError{ve}
	}
	var out []*jsonschema.ValidationError
	for _, c := range ve.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// compile returns the compiled schema for schemaJSON, compiling it on first use.
func (s *SchemaCache) compile(schemaJSON []byte) (*jsonschema.Schema, error) {
	key := sha256.Sum256(schemaJSON)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[key]; ok {
		return sch, nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("read schema JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("add schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, err
	}
	if s.schemas == nil {
		s.schemas = map[[32]byte]*jsonschema.Schema{}
	}
	if len(s.order) >= maxCachedSchemas {
		delete(s.schemas, s.order[0])
		s.order = s.order[1:]
	}
	s.schemas[key] = sch
	s.order = append(s.order, key)
	return sch, nil
}

// noLoader refuses to load any schema resource: plugin schemas must be self-contained
// (the standard meta-schemas are built in).
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema references %s: plugin schemas must be self-contained", url)
}
