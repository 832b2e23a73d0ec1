"""One router module per resource; `tldrlab.service.app.ROUTER_MODULES` lists them."""
