package config

import (
	"os"
	"testing"
)

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("testdata/sitelink.example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("sitelink.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSyntaxError(b *testing.B) {
	data, err := os.ReadFile("testdata/sitelink.example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	data = append(data, "\n  bad: [unclosed\n"...)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("sitelink.yaml", data); err == nil {
			b.Fatal("no error")
		}
	}
}

func BenchmarkValidateSchemaCached(b *testing.B) {
	c, err := Parse("f.yaml", []byte(errorAtConfig))
	if err != nil {
		b.Fatal(err)
	}
	var sc SchemaCache
	b.ReportAllocs()
	for b.Loop() {
		if err := sc.Validate(c, "tunnel", []byte(tunnelSchema)); err == nil {
			b.Fatal("no error")
		}
	}
}
