package adminapi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	viewerToken = "viewer-0123456789abcdef"
	editorToken = "editor-0123456789abcdef"
)

func TestAPITokenFileParsing(t *testing.T) {
	ts, err := parseTokens("tokens", []byte("# comment\n\n"+viewerToken+" viewer grafana\n"+editorToken+" editor\n"))
	require.NoError(t, err)
	require.Len(t, ts, 2)
	v, ok := ts.lookup(viewerToken)
	require.True(t, ok)
	require.Equal(t, RoleViewer, v.role)
	require.Equal(t, "grafana", v.name)
	e, ok := ts.lookup(editorToken)
	require.True(t, ok)
	require.Equal(t, RoleEditor, e.role)
	require.Equal(t, "token@line4", e.name)
	_, ok = ts.lookup("viewer-0123456789abcdeX")
	require.False(t, ok)

	for _, tc := range []struct{ file, want string }{
		{viewerToken + " viewer\n" + editorToken + " admin\n", "tokens:2: unknown role \"admin\""},
		{"# only a comment\n" + editorToken + "\n", "tokens:2: expected \"TOKEN ROLE [NAME]\""},
		{editorToken + " editor a b\n", "tokens:1: expected"},
		{"short editor\n", "tokens:1: token too short"},
		{editorToken + " editor\n" + editorToken + " viewer\n", "tokens:2: the same token as line 1"},
		{"# nothing\n", "no tokens"},
	} {
		_, err := parseTokens("tokens", []byte(tc.file))
		require.ErrorContains(t, err, tc.want)
	}
}
