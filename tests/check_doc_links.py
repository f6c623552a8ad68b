"""Every relative link in the README and docs/ names a file of this repository that exists.

Usage: check_doc_links.py REPO_ROOT. Prints each broken link (file:line: target: why) and exits 1
if there is one. Links to the web (scheme://, mailto:) and in-page anchors are not checked.
"""

import os
import re
import sys

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def main(root: str) -> int:
    root = os.path.realpath(root)
    files = [os.path.join(root, "README.md")]
    for directory, _, names in os.walk(os.path.join(root, "docs")):
        files += [os.path.join(directory, name) for name in names if name.endswith(".md")]
    broken = 0
    for path in sorted(files):
        with open(path, encoding="utf-8") as text:
            for number, line in enumerate(text, 1):
                for target in LINK.findall(line):
                    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                        continue
                    file_part = target.split("#", 1)[0]
                    resolved = os.path.realpath(os.path.join(os.path.dirname(path), file_part))
                    where = f"{os.path.relpath(path, root)}:{number}: {target}"
                    if not resolved.startswith(root + os.sep) and resolved != root:
                        print(f"{where}: points outside the repository")
                        broken += 1
                    elif not os.path.exists(resolved):
                        print(f"{where}: no such file")
                        broken += 1
    print(f"{len(files)} documents checked, {broken} broken link(s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
