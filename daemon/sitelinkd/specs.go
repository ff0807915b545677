package sitelinkd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sitelink/sitelink/daemon/config"
	"github.com/sitelink/sitelink/daemon/supervisor"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// specs turns a config and the vendor manifests into the supervisor's desired state, in
// dependency order.
func specs(cfg *config.Config, manifests []config.Manifest) ([]supervisor.Spec, error) {
	byName := make(map[string]config.Manifest, len(manifests))
	for _, m := range manifests {
		byName[m.Name] = m
	}
	ordered, err := cfg.Ordered()
	if err != nil {
		return nil, err
	}
	out := make([]supervisor.Spec, 0, len(ordered))
	for _, p := range ordered {
		sp := supervisor.Spec{Name: p.Name, Enabled: p.Enabled, Required: p.Required, After: p.After,
			ActiveWhen: p.ActiveWhen, Config: p.Config, Binary: p.Binary}
		if m, ok := byName[p.Name]; ok {
			sp.Vendor = true
			sp.SHA256 = m.SHA256
			sp.APIVersion = m.APIVersion
			sp.Caps = m.Capabilities
			sp.User = m.User
			sp.Args = m.Args
			if sp.Binary == "" {
				sp.Binary = m.Path
			}
		}
		if sp.Binary == "" {
			sp.Binary = filepath.Join(cfg.Daemon.PluginDir, p.Name)
		}
		out = append(out, sp)
	}
	return out, nil
}

// validate checks each enabled plugin's section against the plugin's JSON Schema and,
// for running plugins, with Configure(validate_only). Errors carry file positions.
func (s *System) validate(ctx context.Context, cfg *config.Config, want []supervisor.Spec) error {
	var all config.Errors
	for _, sp := range want {
		if !sp.Enabled {
			continue
		}
		info, err := s.sup.Info(ctx, sp)
		if err != nil {
			all = append(all, cfg.ErrorAt(sp.Name, "", err.Error()))
			continue
		}
		if schema := info.GetConfigSchema(); schema != "" {
			if err := s.schemas.Validate(cfg, sp.Name, []byte(schema)); err != nil {
				var ce *config.Errors
				if errors.As(err, &ce) {
					all = append(all, *ce...)
				} else {
					all = append(all, cfg.ErrorAt(sp.Name, "", err.Error()))
				}
				continue
			}
		}
		if err := s.sup.ValidateConfig(ctx, sp.Name, sp.Config); err != nil {
			var fes sdk.FieldErrors
			if errors.As(err, &fes) {
				for _, fe := range fes {
					all = append(all, cfg.ErrorAt(sp.Name, fe.Path, fe.Message))
				}
			} else {
				all = append(all, cfg.ErrorAt(sp.Name, "", fmt.Sprintf("plugin could not check its config: %v", err)))
			}
		}
	}
	if len(all) > 0 {
		return &all
	}
	return nil
}
