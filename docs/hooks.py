"""mkdocs hook: the configuration and command-line reference pages, generated at build time.

Both come from the code (``raystudy.reference``), so the site documents exactly the options
the installed raystudy has; the pages are never committed.
"""

from mkdocs.structure.files import File

GENERATED = {
    "reference/configuration.md": ("config_markdown", "Configuration"),
    "reference/cli.md": ("cli_markdown", "Command line"),
}


def on_files(files, config):
    from raystudy import reference

    for path, (function, title) in GENERATED.items():
        text = getattr(reference, function)()
        # A page needs one title; give it the nav's when the generator writes none.
        if not text.lstrip().startswith("# "):
            text = f"# {title}\n\n{text}"
        files.append(File.generated(config, path, content=text))
    return files
