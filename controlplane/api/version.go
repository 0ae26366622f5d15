package api

import (
	"runtime"
	"runtime/debug"
)

// VersionInfo is the answer of GET /v1/version, and what `bulwark
// --version` and `bulwarkctl version` print: the build of a binary.
type VersionInfo struct {
	// Version is the module version the binary was built at (v1.2.0 for
	// `go install ...@v1.2.0`), or "devel" for a build from a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision of a build from a checkout, when known.
	Commit string `json:"commit,omitempty"`
	// Modified says the checkout had uncommitted changes.
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
}

// BuildVersion reads the running binary's version from its build
// information (the module version, and the revision `go build` stamps in a
// git checkout).
func BuildVersion() VersionInfo {
	v := VersionInfo{Version: "devel", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		v.Version = mv
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String renders the version on one line: "v1.2.0 (go1.26.0)" or
// "devel (commit 0fe1820c5a1b, modified, go1.26.0)".
func (v VersionInfo) String() string {
	s := v.Version + " ("
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += "commit " + c + ", "
		if v.Modified {
			s += "modified, "
		}
	}
	return s + v.GoVersion + ")"
}
