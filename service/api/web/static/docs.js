// Swagger UI on the service's own OpenAPI document; its files come from the swagger-ui-py wheel.
"use strict";

window.ui = SwaggerUIBundle({
  url: new URL("api/v2/openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
