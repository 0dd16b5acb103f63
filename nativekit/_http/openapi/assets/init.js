// Starts Swagger UI on the document named by the page (nativekit's docs page).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,
  });
});
