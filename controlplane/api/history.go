package api

import "time"

// WriteRecord is one entry of the write history (GET /v1/history): a
// resource write that changed the store — a PUT, a DELETE, an apply, or an
// apply of the directory sync — with who made it and, per resource, the
// revision it replaced and the one it wrote.
type WriteRecord struct {
	// Revision is the store revision of the write.
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
	// Who is the token's name (or "anonymous" without authentication), or
	// the directory sync's source ("dir:/srv/policies").
	Who string `json:"who"`
	// Operation is put, delete or apply.
	Operation string `json:"operation"`
	// Source is the apply's source, when it had one.
	Source string `json:"source,omitempty"`
	// Prune says the apply pruned what Source no longer declares.
	Prune bool `json:"prune,omitempty"`
	// Items are the resources the write created, updated or deleted.
	Items []WriteItem `json:"items"`
}

// Write history operations.
const (
	OperationPut    = "put"
	OperationDelete = "delete"
	OperationApply  = "apply"
)

// WriteItem is what one write did to one resource.
type WriteItem struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"`
	// RevisionBefore is the resource's revision before the write; 0 when it
	// was created.
	RevisionBefore int64 `json:"revisionBefore"`
	// RevisionAfter is its revision after the write; 0 when it was deleted.
	RevisionAfter int64 `json:"revisionAfter"`
}

// WriteHistory is the answer of GET /v1/history: the newest records first.
type WriteHistory struct {
	Items []WriteRecord `json:"items"`
	// Kept is how many records the server keeps; older ones are dropped.
	Kept int `json:"kept"`
}
