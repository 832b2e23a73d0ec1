// Starts ReDoc on /redoc (served by this server: /docs/assets/redoc.standalone.js); no web fonts are fetched.
"use strict";
(function () {
  const root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, { hideDownloadButton: false }, root);
})();
