// MathJax 3 configuration for pymdownx.arithmatex (generic mode). MathJax itself is served from
// this site (assets/mathjax/, copied from a PyPI package at build time by docs/hooks.py).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    // md-ellipsis: headings with formulas in the table of contents and the navigation
    processHtmlClass: "arithmatex|md-ellipsis",
  },
};
