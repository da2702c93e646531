// Package validation checks alumiini objects at admission, so that a bad spec
// is refused with a 422 naming the field and never reaches the controller.
package validation
