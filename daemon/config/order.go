package config

import (
	"fmt"
	"slices"
	"strings"
)

// Ordered returns the enabled plugins in dependency order: each after the plugins its
// `after` names, otherwise in the order they are written. `after` entries naming
// plugins that are not enabled are ignored here (Parse rejects them). A cycle is an
// error naming it.
func (c *Config) Ordered() ([]Plugin, error) {
	var enabled []Plugin
	index := map[string]int{}
	for _, p := range c.Plugins {
		if p.Enabled {
			index[p.Name] = len(enabled)
			enabled = append(enabled, p)
		}
	}
	done := make([]bool, len(enabled))
	out := make([]Plugin, 0, len(enabled))
	for len(out) < len(enabled) {
		picked := false
		for i, p := range enabled {
			if done[i] || !ready(p, index, done) {
				continue
			}
			done[i] = true
			out = append(out, p)
			picked = true
			break
		}
		if !picked {
			names := make([]string, 0, len(enabled))
			graph := map[string][]string{}
			for i, p := range enabled {
				if done[i] {
					continue
				}
				names = append(names, p.Name)
				for _, dep := range p.After {
					if j, ok := index[dep]; ok && !done[j] {
						graph[p.Name] = append(graph[p.Name], dep)
					}
				}
			}
			var cycles []string
			for _, cyc := range findCycles(names, graph) {
				cycles = append(cycles, strings.Join(cyc, " -> "))
			}
			return nil, fmt.Errorf("order plugins: dependency cycle: %s", strings.Join(cycles, "; "))
		}
	}
	return out, nil
}

// ready reports whether every enabled dependency of p is already ordered.
func ready(p Plugin, index map[string]int, done []bool) bool {
	for _, dep := range p.After {
		if j, ok := index[dep]; ok && !done[j] {
			return false
		}
	}
	return true
}

// findCycles finds cycles in graph (node -> the nodes it waits for) by depth-first
// search from each node in names order. Each cycle is returned closed
// ([a b c a]) and rotated to start at its earliest node in names; self-loops included.
func findCycles(names []string, graph map[string][]string) [][]string {
	order := make(map[string]int, len(names))
	for i, n := range names {
		order[n] = i
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var out [][]string
	seen := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, m := range graph[n] {
			switch color[m] {
			case white:
				visit(m)
			case grey:
				start := slices.Index(stack, m)
				cyc := slices.Clone(stack[start:])
				// Rotate to the earliest node.
				first := 0
				for i, x := range cyc {
					if order[x] < order[cyc[first]] {
						first = i
					}
				}
				cyc = append(append(slices.Clone(cyc[first:]), cyc[:first]...), cyc[first])
				if key := strings.Join(cyc, "\x00"); !seen[key] {
					seen[key] = true
					out = append(out, cyc)
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range names {
		if color[n] == white {
			visit(n)
		}
	}
	slices.SortStableFunc(out, func(a, b []string) int { return order[a[0]] - order[b[0]] })
	return out
}
