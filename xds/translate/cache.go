package translate

import (
	"encoding/json"
	"sync"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// Cache memoizes TranslateService by content: a service is translated once
// per distinct (flavor, service) input, and every group and build that
// needs it gets the same objects. Pass c.TranslateService to
// TranslateUsing. It is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
	gen     uint64
}

type cacheEntry struct {
	res  *ServiceResources
	err  error
	used uint64
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{entries: map[string]*cacheEntry{}} }

// TranslateService is TranslateService, memoized.
func (c *Cache) TranslateService(flavor ir.Flavor, s *ir.Service) (*ServiceResources, error) {
	key, err := cacheKey(flavor, s)
	if err != nil {
		return TranslateService(flavor, s)
	}
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		e.used = c.gen
	}
	c.mu.Unlock()
	if ok {
		return e.res, e.err
	}
	res, err := TranslateService(flavor, s)
	c.mu.Lock()
	c.entries[key] = &cacheEntry{res: res, err: err, used: c.gen}
	c.mu.Unlock()
	return res, err
}

// Sweep forgets the entries no translation used since the previous Sweep
// and returns how many it forgot. Call it after each round of builds.
func (c *Cache) Sweep() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, e := range c.entries {
		if e.used != c.gen {
			delete(c.entries, k)
			n++
		}
	}
	c.gen++
	return n
}

// Len is the number of memoized services.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheKey is the service's full content: JSON with sorted map keys.
func cacheKey(flavor ir.Flavor, s *ir.Service) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return string(flavor) + "\x00" + string(b), nil
}
