"""Static files of the `vla-r1 label` page (plain HTML, CSS and JavaScript; no build step)."""
