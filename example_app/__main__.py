"""Run the example app on http://127.0.0.1:5000 (``PORT`` overrides the port)."""

from __future__ import annotations

import logging
import os
import sys

from . import close_local_services, create_app


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    port_text = os.environ.get("PORT", "5000")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        print(f"PORT must be a port number from 1 to 65535, not {port_text!r}.", file=sys.stderr)
        return 2

    app = create_app()
    try:
        # Bound to 127.0.0.1 only: in local mode the app runs tasks for anyone who can reach it.
        app.run(host="127.0.0.1", port=int(port_text), threaded=True, use_reloader=False)
    finally:
        close_local_services(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
