package main

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/libopenstorage/openstorage/api"
	"github.com/libopenstorage/openstorage/cluster"
	"github.com/libopenstorage/openstorage/pkg/auth"
)

// nodeSpec is one node as the control API and --nodes take and return it.
type nodeSpec struct {
	ID                string            `json:"id"`
	SchedulerNodeName string            `json:"schedulerNodeName"`
	Hostname          string            `json:"hostname"`
	MgmtIP            string            `json:"mgmtIp"`
	DataIP            string            `json:"dataIp"`
	Status            string            `json:"status"`
	Topology          map[string]string `json:"topology,omitempty"`
}

// parseStatus maps an openstorage.api.Status enum name (STATUS_OK, STATUS_OFFLINE, …) to
// its value. The empty string means STATUS_OK, so a test only spells out unusual states.
func parseStatus(name string) (api.Status, error) {
	if name == "" {
		return api.Status_STATUS_OK, nil
	}
	v, ok := api.Status_value[name]
	if !ok {
		return 0, fmt.Errorf("unknown status %q (want an openstorage.api.Status name, one of %v)",
			name, statusNames())
	}
	return api.Status(v), nil
}

func statusNames() []string {
	names := make([]string, 0, len(api.Status_value))
	for n := range api.Status_value {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return api.Status_value[names[i]] < api.Status_value[names[j]] })
	return names
}

// nodeStore is the node list the shim reports instead of the cluster manager's own
// single node. Order is kept as given: InspectCurrent reports the first node.
type nodeStore struct {
	mu    sync.RWMutex
	nodes []nodeSpec
	start time.Time
}

func newNodeStore() *nodeStore { return &nodeStore{start: time.Now()} }

// replace validates a whole list and installs it. Ids must be non-empty and unique.
func (s *nodeStore) replace(list []nodeSpec) error {
	seen := make(map[string]bool, len(list))
	out := make([]nodeSpec, len(list))
	for i, n := range list {
		if n.ID == "" {
			return fmt.Errorf("node %d: id is empty", i)
		}
		if seen[n.ID] {
			return fmt.Errorf("node %d: duplicate id %q", i, n.ID)
		}
		seen[n.ID] = true
		st, err := parseStatus(n.Status)
		if err != nil {
			return fmt.Errorf("node %q: %v", n.ID, err)
		}
		n.Status = st.String() // normalise "" to STATUS_OK so GET /nodes shows what is served
		n.Topology = copyMap(n.Topology)
		out[i] = n
	}
	s.mu.Lock()
	s.nodes = out
	s.mu.Unlock()
	return nil
}

var errNoSuchNode = errors.New("no such node")

func (s *nodeStore) setStatus(id, status string) error {
	st, err := parseStatus(status)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.nodes {
		if s.nodes[i].ID == id {
			s.nodes[i].Status = st.String()
			return nil
		}
	}
	return errNoSuchNode
}

func (s *nodeStore) list() []nodeSpec {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]nodeSpec, len(s.nodes))
	for i, n := range s.nodes {
		n.Topology = copyMap(n.Topology)
		out[i] = n
	}
	return out
}

// apiNode builds the cluster manager's node type, which the SDK turns into a StorageNode
// (Node.ToStorageNode). SecurityStatus follows what the real cluster manager sets for
// its own node: SECURED when auth is on.
func (s *nodeStore) apiNode(n nodeSpec) *api.Node {
	st, _ := parseStatus(n.Status) // validated on the way in
	sec := api.StorageNode_UNSECURED
	if auth.Enabled() {
		sec = api.StorageNode_SECURED
	}
	now := time.Now()
	return &api.Node{
		Id:                n.ID,
		SchedulerNodeName: n.SchedulerNodeName,
		Hostname:          n.Hostname,
		MgmtIp:            n.MgmtIP,
		DataIp:            n.DataIP,
		Status:            st,
		StartTime:         s.start,
		Timestamp:         now,
		SecurityStatus:    sec,
		SchedulerTopology: &api.SchedulerTopology{Labels: copyMap(n.Topology)},
		NodeLabels:        map[string]string{},
		NodeData:          map[string]interface{}{},
	}
}

// lookup finds a node by id, or by mgmt/data IP as the real cluster manager's
// getNodeEntry does (it resolves an IP to an id first).
func (s *nodeStore) lookup(idOrIP string) (*api.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, n := range s.nodes {
		if n.ID == idOrIP {
			return s.apiNode(n), true
		}
	}
	for _, n := range s.nodes {
		if n.MgmtIP == idOrIP || n.DataIP == idOrIP {
			return s.apiNode(n), true
		}
	}
	return nil, false
}

// clusterShim is the real cluster manager with only its node view replaced. Everything
// else (cluster id and status, schedule policies, object stores, secrets, pairs, …) goes
// to the embedded manager.
type clusterShim struct {
	cluster.Cluster
	nodes *nodeStore
}

// Enumerate backs OpenStorageNode/Enumerate, EnumerateWithFilters and InspectCurrent
// (which inspects Cluster.NodeId: the first node of the list). With an empty list,
// NodeId stays the manager's own id, which Inspect does not know.
func (c *clusterShim) Enumerate() (api.Cluster, error) {
	cl, err := c.Cluster.Enumerate()
	if err != nil {
		return cl, err
	}
	c.nodes.mu.RLock()
	defer c.nodes.mu.RUnlock()
	cl.Nodes = make([]*api.Node, 0, len(c.nodes.nodes))
	for _, n := range c.nodes.nodes {
		cl.Nodes = append(cl.Nodes, c.nodes.apiNode(n))
	}
	if len(c.nodes.nodes) > 0 {
		cl.NodeId = c.nodes.nodes[0].ID
	}
	return cl, nil
}

// Inspect backs OpenStorageNode/Inspect. An unknown id gets the real manager's error
// text, which the SDK reports as codes.Internal (it maps only kvdb.ErrNotFound to
// NotFound, and the real manager never returns that here).
func (c *clusterShim) Inspect(nodeID string) (api.Node, error) {
	if n, ok := c.nodes.lookup(nodeID); ok {
		return *n, nil
	}
	return api.Node{}, fmt.Errorf("Unable to locate node with provided UUID '%s'.", nodeID)
}

// GetNodeIdFromIp is used by OpenStorageVolume/Create to turn replica_set node IPs into
// ids; same contract as the real manager (non-IPs pass through).
func (c *clusterShim) GetNodeIdFromIp(idIP string) (string, error) {
	if net.ParseIP(idIP) == nil {
		return idIP, nil
	}
	if n, ok := c.nodes.lookup(idIP); ok {
		return n.Id, nil
	}
	return idIP, errors.New("Failed to locate IP in this cluster.")
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
