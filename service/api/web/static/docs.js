// Swagger UI on the service's own OpenAPI document; its files come from the swagger-ui-py wheel.
"use strict";

window.ui = SwaggerUIBundle({
  url: new URL(document.documentElement.dataset.document, document.baseURI).href, // the server fills it in
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
