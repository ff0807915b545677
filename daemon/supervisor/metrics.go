package supervisor

import (
	"context"
	"sync"
)

// PluginMetrics asks every running plugin for its metrics text, in parallel, within ctx.
func (s *Supervisor) PluginMetrics(ctx context.Context) map[string][]byte {
	s.mu.Lock()
	insts := s.instancesLocked()
	s.mu.Unlock()
	out := make(map[string][]byte, len(insts))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, in := range insts {
		cl := in.currentClient()
		if cl == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := cl.Metrics(ctx)
			if err != nil {
				in.log.Debug("plugin metrics unavailable", "error", err)
				return
			}
			mu.Lock()
			out[in.name] = b
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
