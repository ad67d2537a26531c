-- Listen options for the spec servers from their command line:
-- --port N and --set key=value (numbers and booleans converted).
return function(arg, opts)
  local i = 1
  while arg[i] do
    if arg[i] == "--port" then
      opts.port = tonumber(arg[i + 1])
    elseif arg[i] == "--set" then
      local k, v = arg[i + 1]:match("^([%w_]+)=(.*)$")
      if v == "true" then v = true elseif v == "false" then v = false else v = tonumber(v) or v end
      opts[k] = v
    else
      error("unknown argument " .. arg[i])
    end
    i = i + 2
  end
  return opts
end
