package sim

// Metrics describes the active-view graph among live nodes.
type Metrics struct {
	// Live is the number of started, not crashed nodes.
	Live int
	// Components is the number of connected components of the active-view graph among
	// live nodes (links taken as undirected).
	Components int
	// Largest is the size of the largest component.
	Largest int
	// Links counts active-view entries from a live node to a live node.
	Links int
	// Symmetry is the fraction of those links whose reverse link exists too.
	Symmetry float64
	// DeadLinks counts active-view entries of live nodes that point at crashed nodes (not
	// yet detected).
	DeadLinks int
	// Isolated counts live nodes without a single live neighbour.
	Isolated int
	// InDegreeMean and InDegreeMax describe how many live nodes hold each live node in
	// their active view.
	InDegreeMean float64
	InDegreeMax  int
	// InDegree[d] is the number of live nodes with in-degree d.
	InDegree []int
}

// Measure computes Metrics for the current state.
func (s *Sim) Measure() Metrics {
	var m Metrics
	n := len(s.nodes)
	parent := make([]int32, n)
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	inDeg := make([]int, n)
	outLive := make([]int, n)
	mutual := 0
	for _, id := range s.live {
		m.Live++
		s.scratch = s.nodes[id].state.AppendActive(s.scratch[:0])
		for _, p := range s.scratch {
			if !s.nodes[p].up() {
				m.DeadLinks++
				continue
			}
			m.Links++
			inDeg[p]++
			outLive[id]++
			if s.nodes[p].state.IsActive(id) {
				mutual++
			}
			if a, b := find(int32(id)), find(int32(p)); a != b {
				parent[a] = b
			}
		}
	}
	if m.Links > 0 {
		m.Symmetry = float64(mutual) / float64(m.Links)
	}
	size := make(map[int32]int)
	total := 0
	for _, id := range s.live {
		size[find(int32(id))]++
		d := inDeg[id]
		total += d
		m.InDegreeMax = max(m.InDegreeMax, d)
		for len(m.InDegree) <= d {
			m.InDegree = append(m.InDegree, 0)
		}
		m.InDegree[d]++
		if d == 0 && outLive[id] == 0 {
			m.Isolated++
		}
	}
	m.Components = len(size)
	for _, c := range size {
		m.Largest = max(m.Largest, c)
	}
	if m.Live > 0 {
		m.InDegreeMean = float64(total) / float64(m.Live)
	}
	return m
}
