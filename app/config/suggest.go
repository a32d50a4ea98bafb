package config

import "strings"

// Suggest returns the configuration key closest to an unknown key path, or ""
// when none is close: a key with the same last segment (concurrency →
// worker.concurrency) or one within a small edit distance (worker.concurency
// → worker.concurrency).
func Suggest(path string) string {
	keys := Keys()
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k.Path] = k.Path
	}
	return suggestAmong(strings.ToLower(path), m)
}

// suggestAmong picks the best candidate (map key) for s and returns its value
// (a key path). Of equally close candidates it picks the key declared first
// in Config (concurrency → worker.concurrency, not launcher.concurrency).
func suggestAmong(s string, candidates map[string]string) string {
	rank := make(map[string]int)
	for i, k := range Keys() {
		rank[k.Path] = i
	}
	before := func(a, b string) bool {
		ra, oka := rank[a]
		rb, okb := rank[b]
		if oka && okb {
			return ra < rb
		}
		return a < b
	}
	best, bestDist := "", -1
	for c, v := range candidates {
		d := levenshtein(s, c)
		switch {
		case strings.HasSuffix(c, "."+s), strings.HasSuffix(c, "_"+s):
			// The leaf name without its section: concurrency.
			d = min(d, 1)
		case strings.HasPrefix(c, s+"."), strings.HasPrefix(c, s+"_"):
			// A section given a value: cancellation: false.
			d = min(d, 1)
		case s != c && leaf(s) == leaf(c) && strings.Contains(s, "."):
			// The right leaf in the wrong section: executor.concurrency.
			d = min(d, 1)
		}
		if bestDist < 0 || d < bestDist || d == bestDist && before(v, best) {
			best, bestDist = v, d
		}
	}
	if best == "" || bestDist > max(2, len(s)/4) {
		return ""
	}
	return best
}

func leaf(p string) string { return p[strings.LastIndex(p, ".")+1:] }

// levenshtein is the edit distance between a and b.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
