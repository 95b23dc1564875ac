package signaling

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// The [signaling] block of docs/protocol.md is what operators copy; it must
// decode strictly and match DefaultConfig.
func TestDocumentedConfigIsTheDefault(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "```toml\n[signaling]")
	if start < 0 {
		t.Fatal("no [signaling] toml block in docs/protocol.md")
	}
	block := text[start+len("```toml\n"):]
	block = block[:strings.Index(block, "```")]
	var file struct {
		Signaling Config `toml:"signaling"`
	}
	md, err := toml.Decode(block, &file)
	if err != nil {
		t.Fatal(err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		t.Fatalf("unknown keys in the documented section: %v", un)
	}
	got, want := file.Signaling, DefaultConfig()
	if len(got.AllowedOrigins) == 0 {
		got.AllowedOrigins = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("documented config\n%+v\ndiffers from DefaultConfig\n%+v", got, want)
	}
	// Every field is documented.
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		key := typ.Field(i).Tag.Get("toml")
		if !md.IsDefined("signaling", key) {
			t.Errorf("signaling.%s is not in the documented section", key)
		}
	}
}
