package controlplane

import (
	"net/http"

	"github.com/bulwarkmesh/bulwark/controlplane/ui"
)

// withConsole serves the web console under /ui/ next to the admin API;
// every other path goes to the API. /ui and / lead to the console's page,
// so an operator who opens the admin address in a browser finds it.
func withConsole(apiHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, ui.Handler())
	mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	mux.Handle("/", apiHandler)
	return mux
}
