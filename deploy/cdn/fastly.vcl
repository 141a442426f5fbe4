# The Fastly alternative (VCL): API paths pass, static files and uploads are cached for 7 and 30 days, the
# lead-capture page for a minute, scripts and
# styles 7 days, images 30 days, and edge rate limits of 1000 requests per minute for the API and 10 for admin
# routes (block), as in cloudflare.yaml. WAF (OWASP rules) and bot management are enabled on the service in
# Fastly's Next-Gen WAF, outside VCL.

ratecounter rc_api {}
penaltybox pb_api {}
ratecounter rc_admin {}
penaltybox pb_admin {}

sub vcl_recv {
#FASTLY recv
  if (req.url.path ~ "^/api/v1/admin/") {
    if (ratelimit.check_rate(client.ip, rc_admin, 1, 60, 10, pb_admin, 1m)) {
      error 629 "admin rate limit";
    }
  } else if (req.url.path ~ "^/(api|data|orchestrator)/") {
    if (ratelimit.check_rate(client.ip, rc_api, 1, 60, 1000, pb_api, 1m)) {
      error 629 "api rate limit";
    }
  }
  # Who may read an API answer is decided per caller (at NGINX and in the services): never looked up in or stored here.
  if (req.url.path ~ "^/(api|data|orchestrator)/") {
    return(pass);
  }
  return(lookup);
}

sub vcl_fetch {
#FASTLY fetch
  if (req.url.path ~ "^/static/") {
    set beresp.ttl = 7d;
  } else if (req.url.path ~ "^/quote/") {
    set beresp.ttl = 60s;
  } else if (req.url.path ~ "^/uploads/") {
    set beresp.ttl = 30d;
  } else if (req.url.ext ~ "^(js|css)$") {
    set beresp.ttl = 7d;
  } else if (req.url.ext ~ "^(png|jpg|jpeg|gif|webp|avif|svg|ico)$") {
    set beresp.ttl = 30d;
  } else {
    return(pass);
  }
  return(deliver);
}

sub vcl_error {
#FASTLY error
  if (obj.status == 629) {
    set obj.status = 429;
    set obj.response = "Too Many Requests";
    set obj.http.Content-Type = "application/json";
    set obj.http.Retry-After = "60";
    synthetic {"{"statusCode":429,"code":"RATE_LIMITED","error":"Too Many Requests","message":"Too many requests from this client at the edge"}"};
    return(deliver);
  }
}
