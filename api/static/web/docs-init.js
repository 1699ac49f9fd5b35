// Starts Swagger UI on /docs (api/docs.py). A file, not an inline script, so the page's CSP can say
// script-src 'self'. The URLs come from the page's data- attributes.
"use strict";
(function () {
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Otherwise Swagger UI shows a badge image fetched from validator.swagger.io.
    validatorUrl: null,
    oauth2RedirectUrl: window.location.origin + el.dataset.oauth2RedirectUrl,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
