package ctl

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// ManSection is the manual section of sitelinkctl's man pages (system administration).
const ManSection = "8"

func (a *app) genManCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages into DIR (for packaging)",
		Hidden: true,
		Args:   argsBetween(1, 1, "a DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			header := &doc.GenManHeader{
				Title:   "SITELINKCTL",
				Section: ManSection,
				Source:  "Sitelink " + a.build.Version,
				Manual:  "Sitelink Manual",
			}
			// Reproducible pages: the build date, else SOURCE_DATE_EPOCH (cobra), else now.
			if d, err := time.Parse(time.RFC3339, a.build.Date); err == nil {
				header.Date = &d
			} else if d, err := time.Parse(time.DateOnly, a.build.Date); err == nil {
				header.Date = &d
			}
			if err := doc.GenManTree(a.root, header, args[0]); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			return nil
		},
	}
}

func (a *app) genCompletionCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-completion DIR",
		Short:  "Write the bash, zsh and fish completion scripts into DIR (for packaging)",
		Long:   "Writes DIR/sitelinkctl.bash, DIR/_sitelinkctl (zsh) and DIR/sitelinkctl.fish.",
		Hidden: true,
		Args:   argsBetween(1, 1, "a DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("gen-completion: %w", err)
			}
			gens := []struct {
				file string
				gen  func(string) error
			}{
				{"sitelinkctl.bash", func(p string) error { return a.root.GenBashCompletionFileV2(p, true) }},
				{"_sitelinkctl", a.root.GenZshCompletionFile},
				{"sitelinkctl.fish", func(p string) error { return a.root.GenFishCompletionFile(p, true) }},
			}
			for _, g := range gens {
				if err := g.gen(filepath.Join(dir, g.file)); err != nil {
					return fmt.Errorf("gen-completion %s: %w", g.file, err)
				}
			}
			return nil
		},
	}
}
