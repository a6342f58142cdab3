// Command stork-image assembles stork's container image from a static stork binary, without a
// container daemon, into one tar archive that `docker load`, `podman load`,
// `kind load image-archive` and `ctr images import` all accept.
//
// The archive has the shape `docker save` writes since Docker 25: an OCI image layout
// (oci-layout, index.json, blobs/sha256/...) that also carries Docker's manifest.json pointing
// at the same blobs. Loaders that understand OCI layouts read index.json (the image name is in
// its io.containerd.image.name annotation); older Docker reads manifest.json.
//
// The image: OCI manifest and config, no base image, one layer holding only /stork (0755,
// root-owned), run as 65532:65532. Every timestamp is --created, so the same binary and flags
// give a byte-identical archive.
//
// Usage (see the Justfile's `image` recipe):
//
//	stork-image --binary target/x86_64-unknown-linux-gnu/dist/stork \
//	  --tag ghcr.io/stork-rs/stork:0.1.0 --version 0.1.0 --revision 1a2b3c4d5e6f \
//	  --source https://github.com/stork-rs/stork --licenses Apache-2.0 \
//	  --created 2026-01-02T03:04:05Z --out dist/stork-0.1.0.oci.tar
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The path of the binary inside the image, and the unprivileged user it runs as (the uid/gid
// distroless images use for "nonroot"; no /etc/passwd is needed for a numeric user).
const (
	binaryPath = "/stork"
	imageUser  = "65532:65532"
)

type options struct {
	binary, tag, version, revision, source, licenses, title, description, arch, out string
	created                                                                         time.Time
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "stork-image: %v\n", err)
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintf(os.Stderr, "stork-image: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	var created string
	fl := flag.NewFlagSet("stork-image", flag.ContinueOnError)
	fl.StringVar(&o.binary, "binary", "", "static stork binary to put at /stork (required)")
	fl.StringVar(&o.tag, "tag", "", "fully qualified image tag, e.g. ghcr.io/stork-rs/stork:0.1.0 (required)")
	fl.StringVar(&o.version, "version", "", "org.opencontainers.image.version (required)")
	fl.StringVar(&o.revision, "revision", "", "org.opencontainers.image.revision (required)")
	fl.StringVar(&o.source, "source", "", "org.opencontainers.image.source (required)")
	fl.StringVar(&o.licenses, "licenses", "", "org.opencontainers.image.licenses, an SPDX expression (required)")
	fl.StringVar(&o.title, "title", "stork", "org.opencontainers.image.title")
	fl.StringVar(&o.description, "description",
		"Storage-aware scheduling for Kubernetes: scheduler extender, admission webhooks, health monitor, snapshots",
		"org.opencontainers.image.description")
	fl.StringVar(&o.arch, "arch", "amd64", "image architecture; must match the binary")
	fl.StringVar(&created, "created", "", "image creation time, RFC 3339 (default: $SOURCE_DATE_EPOCH)")
	fl.StringVar(&o.out, "out", "", "archive to write, e.g. dist/stork-0.1.0.oci.tar (required)")
	if err := fl.Parse(args); err != nil {
		return o, err
	}
	if fl.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fl.Args())
	}
	for flagName, value := range map[string]string{
		"--binary": o.binary, "--tag": o.tag, "--version": o.version, "--revision": o.revision,
		"--source": o.source, "--licenses": o.licenses, "--out": o.out,
	} {
		if strings.TrimSpace(value) == "" {
			return o, fmt.Errorf("%s is required", flagName)
		}
	}
	var err error
	if o.created, err = creationTime(created, os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		return o, err
	}
	return o, nil
}

// creationTime is --created, else SOURCE_DATE_EPOCH. There is deliberately no "now": a clock in
// the archive would make every build differ.
func creationTime(flagValue, epoch string) (time.Time, error) {
	if flagValue != "" {
		t, err := time.Parse(time.RFC3339, flagValue)
		if err != nil {
			return t, fmt.Errorf("--created %q is not an RFC 3339 time: %w", flagValue, err)
		}
		return t.UTC(), nil
	}
	if epoch != "" {
		secs, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", epoch)
		}
		return time.Unix(secs, 0).UTC(), nil
	}
	return time.Time{}, errors.New("--created or SOURCE_DATE_EPOCH is required (e.g. the commit time: git log -1 --format=%cI)")
}

func run(o options) error {
	tag, err := name.NewTag(o.tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--tag %q: %w", o.tag, err)
	}
	// containerd and Docker name images by their fully qualified reference; a short name such as
	// stork:dev would need Docker Hub's normalisation rules, which this tool does not re-implement.
	if first := strings.SplitN(o.tag, "/", 2)[0]; !strings.ContainsAny(first, ".:") && first != "localhost" {
		return fmt.Errorf("--tag %q: give the registry too, e.g. ghcr.io/stork-rs/stork:%s", o.tag, tag.TagStr())
	}
	binary, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	if err := checkStatic(o.binary, o.arch); err != nil {
		return err
	}
	return assemble(o, tag, binary)
}

// assemble writes the archive for a checked binary.
func assemble(o options, tag name.Tag, binary []byte) error {
	img, err := buildImage(o, binary)
	if err != nil {
		return err
	}

	// Assemble the layout in a scratch directory next to the output (same filesystem, so the
	// final rename is atomic), then pack it.
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(o.out), ".stork-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := lp.WriteImage(img); err != nil {
		return fmt.Errorf("writing the image into the layout: %w", err)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return err
	}
	// The index entry `docker save` (25+) writes: the full name for containerd, the tag for OCI
	// tools; plus the platform, so a loader need not open the config to pick the image. The
	// library would also set artifactType (to the config type), which Docker never writes and
	// which only means something for artifacts: left out, to look like any other image.
	desc.ArtifactType = ""
	desc.Platform = &v1.Platform{OS: "linux", Architecture: o.arch}
	desc.Annotations = map[string]string{
		"io.containerd.image.name":          o.tag,
		"org.opencontainers.image.ref.name": tag.TagStr(),
	}
	if err := lp.AppendDescriptor(*desc); err != nil {
		return fmt.Errorf("adding the image to index.json: %w", err)
	}
	if err := writeDockerManifest(dir, img, o.tag); err != nil {
		return err
	}

	tmp := o.out + ".tmp"
	if err := tarDirectory(dir, tmp, o.created); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "stork-image: wrote %s: %s (manifest %s)\n", o.out, o.tag, digest)
	return nil
}

// checkStatic refuses a binary that needs a dynamic loader or is built for another machine: the
// image has no /lib, so such a binary would only fail when the container starts.
func checkStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if want == elf.EM_NONE || f.Machine != want {
		return fmt.Errorf("%s is built for %s, not --arch %s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it names an ELF interpreter); "+
				"build it with RUSTFLAGS=\"-C target-feature=+crt-static\" and --target", path)
		}
	}
	return nil
}

func buildImage(o options, binary []byte) (v1.Image, error) {
	layerTar, err := singleFileTar(strings.TrimPrefix(binaryPath, "/"), binary, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
	)
	if err != nil {
		return nil, fmt.Errorf("building the layer: %w", err)
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       o.title,
		"org.opencontainers.image.description": o.description,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.licenses":    o.licenses,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
	created := v1.Time{Time: o.created}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: o.arch,
		OS:           "linux",
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{binaryPath},
			User:       imageUser,
			WorkingDir: "/",
			Labels:     labels,
		},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "stork-image: COPY stork " + binaryPath},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return img, nil
}

// singleFileTar is the layer's uncompressed content: one root-owned executable.
func singleFileTar(path string, content []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path,
		Mode:     0o755,
		Size:     int64(len(content)),
		ModTime:  mtime,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeDockerManifest adds Docker's manifest.json, pointing at the layout's own blobs, so a
// Docker that predates OCI-layout loading (before 25) can `docker load` the same archive.
func writeDockerManifest(dir string, img v1.Image, tag string) error {
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	entry := tarball.Descriptor{Config: blobPath(cfg), RepoTags: []string{tag}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		entry.Layers = append(entry.Layers, blobPath(d))
	}
	raw, err := json.Marshal(tarball.Manifest{entry})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDirectory packs dir into the archive out: entries in sorted order, root-owned, every
// mtime set to mtime, so the archive depends only on the directory's contents.
func tarDirectory(dir, out string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, p := range paths {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatUSTAR}
		switch {
		case info.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
		default:
			return fmt.Errorf("unexpected file %s in the layout", p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(tw, p); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
