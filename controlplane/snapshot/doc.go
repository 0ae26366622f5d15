// Package snapshot turns the store's content into xDS snapshots: the Loader
// follows the store's watch, keeps a validated copy of every resource and
// debounces changes; the Builder resolves and translates one snapshot per
// proxy group (flavor/service), each resource translated and encoded once
// per distinct content, checks it, and publishes it to the xDS server's
// cache, keeping the last good snapshot when a build fails.
//
// It imports the store (to read), the xds packages (to translate) and
// controlplane/xdsserver (to publish). It must not import the admin API,
// gitops or the root controlplane package.
package snapshot
