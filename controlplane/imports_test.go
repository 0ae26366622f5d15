package controlplane

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/bulwarkmesh/bulwark"

// importRules says, for packages under a prefix, which of ours they must
// not import (each a prefix too). It is the table of docs/architecture.md.
var importRules = []struct {
	pkg    string
	denied []string
}{
	{"policies", []string{""}}, // nothing of ours
	{"xds", []string{"controlplane", "store"}},
	{"store", []string{"controlplane", "xds"}},
	{"test/envoymodel", []string{""}},
	{"observability", []string{""}},
	{"controlplane/api", []string{"store", "controlplane/"}},
	{"controlplane/metrics", []string{""}},
	{"controlplane/ui", []string{""}},
	{"controlplane/xdsserver/seal", []string{"controlplane/", "store"}},
	{"controlplane/xdsserver/limits", []string{""}},
	{"controlplane/xdsserver", []string{"store", "controlplane/adminapi", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/gitops", "controlplane/audit"}},
	{"controlplane/snapshot", []string{"controlplane/adminapi", "controlplane/gitops", "controlplane/fleet", "controlplane/apply"}},
	{"controlplane/fleet", []string{"controlplane/adminapi", "controlplane/snapshot", "controlplane/gitops", "controlplane/apply"}},
	{"controlplane/view", []string{"controlplane/adminapi", "controlplane/gitops", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/audit"}},
	{"controlplane/apply", []string{"controlplane/adminapi", "controlplane/gitops", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet"}},
	{"controlplane/audit", []string{"store", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/adminapi"}},
	{"controlplane/prom", []string{"store", "xds", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/adminapi", "controlplane/gitops", "controlplane/audit", "controlplane/experiments", "controlplane/metrics"}},
	{"controlplane/experiments", []string{"controlplane/adminapi", "controlplane/gitops", "controlplane/snapshot", "controlplane/xdsserver", "controlplane/apply", "controlplane/fleet", "controlplane/audit"}},
	{"controlplane/recommend", []string{"store", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/adminapi", "controlplane/gitops", "controlplane/audit", "controlplane/experiments"}},
	{"controlplane/adminapi", []string{"controlplane/gitops", "controlplane/snapshot"}},
	{"controlplane/writelog", []string{"store", "controlplane/adminapi", "controlplane/gitops", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet"}},
	{"controlplane/gitops", []string{"store", "controlplane/adminapi", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet"}},
	{"cmd/bulwarkctl", []string{"store", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/adminapi", "controlplane/gitops"}},
	{"cmd/bulwark-demo", []string{"store", "xds", "controlplane/api", "controlplane/xdsserver", "controlplane/snapshot", "controlplane/fleet", "controlplane/apply", "controlplane/adminapi", "controlplane/gitops", "controlplane/audit", "controlplane/metrics"}},
}

// The packages import each other as docs/architecture.md says: no package
// but cmd/ imports the root controlplane package, and each package keeps
// off the ones its doc comment rules out.
func TestImportDirections(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	var problems []string
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		seen++
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module+"/") && imp != module {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if dep == "controlplane" && !strings.HasPrefix(pkg, "cmd/") {
				problems = append(problems, pkg+" imports the root controlplane package")
			}
			for _, r := range importRules {
				if pkg != r.pkg && !strings.HasPrefix(pkg, r.pkg+"/") {
					continue
				}
				if denied(r.pkg, dep, r.denied) {
					problems = append(problems, pkg+" imports "+dep)
				}
			}
		}
	}
	require.Greater(t, seen, 20, "go list found too few packages")
	require.Empty(t, problems)
}

// denied reports whether dep falls under one of the denied prefixes ("" is
// every package of ours); a package's own sub-packages stay allowed.
func denied(pkg, dep string, prefixes []string) bool {
	if dep == pkg || strings.HasPrefix(dep, pkg+"/") {
		return false
	}
	for _, p := range prefixes {
		if p == "" || dep == strings.TrimSuffix(p, "/") || strings.HasPrefix(dep, p) {
			return true
		}
	}
	return false
}
