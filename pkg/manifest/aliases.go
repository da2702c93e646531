package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// charge counts data's documents, split as kyaml splits them (on every line
// starting with "---"), and adds them to b. It refuses data that would go
// over the budget, holds an alias to itself, or does not parse: what cannot
// be counted is not read (fail closed).
func (b *aliasBudget) charge(source string, data []byte) error {
	var docs []*yaml.Node
	for _, chunk := range separatorLine.Split(string(data), -1) {
		parsed, err := parseDocuments([]byte(chunk))
		if err != nil {
			return &Error{Source: source, Message: "invalid YAML: " + err.Error()}
		}
		docs = append(docs, parsed...)
	}
	return b.chargeNodes(source, docs)
}

// chargeDocument counts one document exactly as its reader will parse it:
// plain files are split only on "---" lines of their own, so a quoted
// scalar holding a "---x" line stays one document for both.
func (b *aliasBudget) chargeDocument(source string, data []byte) error {
	docs, err := parseDocuments(data)
	if err != nil {
		return &Error{Source: source, Message: "invalid YAML: " + err.Error()}
	}
	return b.chargeNodes(source, docs)
}

func (b *aliasBudget) chargeNodes(source string, docs []*yaml.Node) error {
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

// separatorLine is any line that may start a document to kyaml, which splits
// on lines starting with "---" before decoding.
var separatorLine = regexp.MustCompile(`(?m)^---.*$`)

// parseDocuments parses data into node trees, aliases unexpanded.
func parseDocuments(data []byte) ([]*yaml.Node, error) {
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
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
