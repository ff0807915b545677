package supervisor

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"
)

// Cleanup starts a plugin just to call its Cleanup (after a crash, from `sitelinkd
// --cleanup`): it is not configured or started. Plugins that do not declare themselves
// kernel-facing are skipped (kernelFacing false).
func (s *Supervisor) Cleanup(ctx context.Context, spec Spec) (removed []string, kernelFacing bool, err error) {
	info, err := s.Info(ctx, spec)
	if err != nil {
		return nil, false, err
	}
	if !info.GetKernelFacing() {
		return nil, false, nil
	}
	logger := s.opts.Logger.With("plugin", spec.Name)
	var pc *plugin.Client
	p, err := s.spawn(ctx, spec, logger, func(c *plugin.Client) { pc = c })
	defer func() {
		if pc != nil {
			pc.Kill()
		}
	}()
	if err != nil {
		return nil, true, err
	}
	if err := s.initProcess(ctx, spec, p); err != nil {
		return nil, true, err
	}
	defer p.client.Close()
	removed, err = p.client.Cleanup(ctx)
	if err != nil {
		return nil, true, fmt.Errorf("cleanup %s: %w", spec.Name, err)
	}
	return removed, true, nil
}
