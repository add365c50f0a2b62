#!/usr/bin/python3
"""Many `crit decode` / `crit encode` runs in one python process.

Starting Debian's crit costs ~0.2 s a file, and the dump of a big tree has
hundreds. Each file here goes through the pycriu calls `crit decode -i FILE
[--pretty]` or `crit encode -i IN -o OUT` makes, with the same arguments, and
fails where crit would, with crit's complaint: its own message, or the last
line of the traceback it would die with.

  crit-batch.py decode [--pretty] [--text] FILE...
  crit-batch.py encode IN OUT [IN OUT]...

One JSON line per file: {"file": F, "ok": true} (with --text, also "text":
what crit decode prints) or {"file": F, "ok": false, "error": MESSAGE}.
"""
import json
import sys
import traceback

import pycriu


class CritRefusal(Exception):
    """What crit itself prints before exiting 1 (not a traceback)."""


def decode(path, pretty, text):
    # crit's decode: images.load, then json.dump (indent 4 when pretty) and a newline.
    with open(path, "rb") as f:
        try:
            img = pycriu.images.load(f, pretty, False)
        except pycriu.images.MagicException as exc:
            raise CritRefusal("Unknown magic %#x. Maybe you are feeding me an image with "
                              "raw data(i.e. pages.img)?" % exc.magic)
    out = json.dumps(img, indent=4 if pretty else None) + "\n"
    return out if text else None


def encode(src, dst):
    # crit's encode: json.load of the input opened "rb", images.dump into the output opened "wb+".
    with open(src, "rb") as f:
        try:
            img = json.load(f)
        except UnicodeDecodeError:
            raise CritRefusal("Cannot read JSON. Maybe you are feeding me an image with protobuf data? "
                              "Encode expects JSON input.")
    with open(dst, "wb+") as f:
        pycriu.images.dump(img, f)


def report(path, run):
    try:
        line = {"file": path, "ok": True}
        text = run()
        if text is not None:
            line["text"] = text
    except CritRefusal as exc:
        line = {"file": path, "ok": False, "error": str(exc)}
    except Exception as exc:
        # crit would die with a traceback; its last line names the exception.
        line = {"file": path, "ok": False, "error": traceback.format_exception_only(type(exc), exc)[-1].strip()}
    print(json.dumps(line))


def main(argv):
    verb, args = (argv[0], argv[1:]) if argv else ("", [])
    flags = {a for a in args if a.startswith("--")}
    files = [a for a in args if not a.startswith("--")]
    if verb == "decode" and flags <= {"--pretty", "--text"}:
        pretty, text = "--pretty" in flags, "--text" in flags
        for path in files:
            report(path, lambda: decode(path, pretty, text))
    elif verb == "encode" and not flags and len(files) % 2 == 0:
        for src, dst in zip(files[0::2], files[1::2]):
            report(src, lambda: encode(src, dst))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
