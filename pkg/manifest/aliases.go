package manifest

import (
	"bytes"
	"fmt"
	"regexp"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// The alias bound: all YAML read by one Render may expand to at most
// aliasFactor times the nodes written in it, plus aliasSlack.
const (
	aliasFactor = 10
	aliasSlack  = 100_000
)

// aliasBudget bounds what the YAML read by one Render expands to. A YAML
// alias stands for a copy of its anchor, so a few hundred bytes of nested
// aliases ("billion laughs") stand for billions of nodes, and whoever
// expands them (kustomize's kyaml, sigs.k8s.io/yaml) fills memory. Decoding
// into yaml.Node keeps an alias as a pointer to its anchor, so the expanded
// size can be counted, with memoisation, in time linear in the text, before
// anything else reads it.
//
// YAML without aliases expands to exactly the nodes it has written, so it
// never reaches the bound; only files leaning on aliases can. Files are
// charged in reading order, which is fixed for a commit, so the same commit
// always gets the same answer.
type aliasBudget struct {
	written  int64
	expanded int64
}

// charge counts data's documents and adds them to b, refusing data that
// would go over the budget or holds an alias to itself. Text that is not
// YAML is not charged: nothing can expand it, and its reader reports it.
func (b *aliasBudget) charge(source string, data []byte) error {
	docs := yamlDocuments(data)
	for _, d := range docs {
		b.written += countWritten(d)
	}
	c := &expansion{
		limit: aliasFactor*b.written + aliasSlack - b.expanded,
		memo:  map[*yaml.Node]int64{},
		open:  map[*yaml.Node]bool{},
	}
	var total int64
	for _, d := range docs {
		n, err := c.size(d)
		if err == nil && total+n > c.limit {
			err = c.tooLarge()
		}
		if err != nil {
			return &Error{Source: source, Message: err.Error()}
		}
		total += n
	}
	b.expanded += total
	return nil
}

// separatorLine is any line that may start a document to some reader:
// kyaml splits on lines starting with "---" before decoding, so splitting
// there too means every document any reader sees is counted.
var separatorLine = regexp.MustCompile(`(?m)^---.*$`)

// yamlDocuments parses data into node trees, aliases unexpanded. A chunk
// that stops parsing stops there: no reader gets past that point either.
func yamlDocuments(data []byte) []*yaml.Node {
	var docs []*yaml.Node
	for _, chunk := range separatorLine.Split(string(data), -1) {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(chunk)))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); err != nil {
				break
			}
			docs = append(docs, &doc)
		}
	}
	return docs
}

// countWritten counts the nodes of n as written: an alias is one node.
func countWritten(n *yaml.Node) int64 {
	total := int64(1)
	for _, child := range n.Content {
		total += countWritten(child)
	}
	return total
}

// expansion counts nodes with aliases expanded, giving up past limit so
// the count itself stays cheap and cannot overflow.
type expansion struct {
	limit int64
	memo  map[*yaml.Node]int64 // expanded size of each anchor reached by an alias
	open  map[*yaml.Node]bool  // anchors being counted, to catch an alias inside its own anchor
}

func (c *expansion) size(n *yaml.Node) (int64, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return c.aliasSize(n)
	}
	total := int64(1)
	for _, child := range n.Content {
		s, err := c.size(child)
		if err != nil {
			return 0, err
		}
		if total += s; total > c.limit {
			return 0, c.tooLarge()
		}
	}
	return total, nil
}

func (c *expansion) aliasSize(n *yaml.Node) (int64, error) {
	anchor := n.Alias
	if s, ok := c.memo[anchor]; ok {
		return s, nil
	}
	if c.open[anchor] {
		return 0, fmt.Errorf("YAML alias *%s (line %d) is inside its own anchor", n.Value, n.Line)
	}
	c.open[anchor] = true
	s, err := c.size(anchor)
	delete(c.open, anchor)
	if err != nil {
		return 0, err
	}
	c.memo[anchor] = s
	return s, nil
}

func (c *expansion) tooLarge() error {
	return fmt.Errorf("YAML aliases expand to more than %d nodes (the bound is %d times the nodes written, plus %d): "+
		"refusing a possible \"billion laughs\"; write the values out instead", c.limit, aliasFactor, aliasSlack)
}
