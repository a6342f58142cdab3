package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// The same inputs give the same bytes: an archive built twice from one commit must not differ.
func TestTheSameInputsGiveAByteIdenticalArchive(t *testing.T) {
	dir := t.TempDir()
	o := options{
		tag: "ghcr.io/stork-rs/stork:0.1.0", version: "0.1.0", revision: "1a2b3c4d5e6f",
		source: "https://github.com/stork-rs/stork", licenses: "Apache-2.0", title: "stork", arch: "amd64",
		created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	tag, err := name.NewTag(o.tag, name.StrictValidation)
	if err != nil {
		t.Fatal(err)
	}
	var archives [][]byte
	for _, out := range []string{"a.tar", "b.tar"} {
		o.out = filepath.Join(dir, out)
		if err := assemble(o, tag, []byte("not really an executable")); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(o.out)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, raw)
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Fatal("two archives from the same inputs differ")
	}

	// Every path manifest.json names is an entry of the archive, and nothing is left over from
	// the scratch directory.
	entries := map[string]time.Time{}
	var docker []struct {
		Config   string
		Layers   []string
		RepoTags []string
	}
	tr := tar.NewReader(bytes.NewReader(archives[0]))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		entries[hdr.Name] = hdr.ModTime
		if hdr.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&docker); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(docker) != 1 || len(docker[0].RepoTags) != 1 || docker[0].RepoTags[0] != o.tag {
		t.Fatalf("manifest.json: %+v", docker)
	}
	for _, path := range append([]string{docker[0].Config, "index.json", "oci-layout"}, docker[0].Layers...) {
		if mtime, ok := entries[path]; !ok || !mtime.Equal(o.created) {
			t.Errorf("%s: in the archive %v, mtime %v", path, ok, mtime)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".stork-image-*")); len(leftovers) > 0 {
		t.Errorf("scratch directories left behind: %v", leftovers)
	}
}

func TestTheCreationTimeComesFromTheFlagOrSourceDateEpoch(t *testing.T) {
	want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct{ flag, epoch string }{{"2026-01-02T04:04:05+01:00", ""}, {"", "1767323045"}} {
		got, err := creationTime(c.flag, c.epoch)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%+v: %v, %v", c, got, err)
		}
	}
	if _, err := creationTime("", ""); err == nil {
		t.Error("no time at all was accepted: the archive would depend on the clock")
	}
}
